"""cryptopipe-train: candles in, a registered (and maybe promoted) model version out."""

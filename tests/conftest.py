pytest_plugins = ["testbed_plugin"]

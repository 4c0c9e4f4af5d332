"""The built-in segkit plugins, installed as ``segkit_plugins``; each file is one family."""

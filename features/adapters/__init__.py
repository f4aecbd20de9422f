"""Adapters: dataset-specific code that turns an outside source into the data contract.

Each adapter lives in its own folder here, apart from the feature layer's core modules.
"""

"""Built-in search-space YAML files, installed as package data of autohm.search_spaces."""

"""The Courier pool's policy folder: filter modules beside this file are importable by name.

This file itself needs nothing: the pool's pythonfilter_conf names the chain. A pool that
also serves Exim (clients = ["courier", "Debian-exim"]) puts its Exim functions here.
"""

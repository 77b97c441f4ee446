"""How weights become callables: device/dtype choice and memory accounting per runtime."""

"""Programs that run from a checkout and are never installed with the product.

``bench`` (the benchmark, ``python -m tools.bench``), ``measure`` (engine settings side by side),
``capacity`` (pods and cost), ``fetch`` (test data and tools from package registries, through
their own clients) and ``assets`` (building the model files the server reads). pyproject.toml
keeps ``tools*`` out of the wheel.
"""

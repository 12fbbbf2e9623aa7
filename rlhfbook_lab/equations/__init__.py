"""Ground floor: pure tensor/array math (losses, estimators, statistics, fits), with no models, no I/O, no
``transformers`` and no ``world``. Every function states its equation, its arguments' shapes and its paper."""

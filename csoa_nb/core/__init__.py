"""The core: networks (`models`), Eq. 13's boxes (`localize`), the WSOL metrics (`metrics`),
a run's scores record (`scores`), training monitors (`monitors`) and the degenerate optima of
CoAug (`degenerate`). It imports the base and data layers only; the methods sit beside it."""

"""The plumbing every model module uses: array backends (``backend``), input checks
(``checks``), closeness and numerical gradients (``testing``), torch modules from rnnkit
parameters (``interop``), the model registry (``registry``), recorded results
(``results``) and notebook display (``show``)."""

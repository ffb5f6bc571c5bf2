"""Training around the models: readout and loss (``layers``), optimisers and the loop
(``train``), sequence classification with torch autograd around any layer
(``seqclass``) and the character language model around any cell (``charlm``)."""

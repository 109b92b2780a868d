"""A Label Studio ML backend that refines the regions already in a task.

``samrefiner serve label-studio`` serves it (``pip install 'samrefiner[labelstudio]'``);
see docs/labelstudio.md. The modules:

* :mod:`.brush`: Label Studio's brush RLE, encoder and decoder (NumPy only);
* :mod:`.config`: the labelling config's image and control tags;
* :mod:`.regions`: regions to masks and boxes, refined masks to regions;
* :mod:`.images`: task images, from the local-files folder or downloaded;
* :mod:`.backend`: the protocol's work, without HTTP;
* :mod:`.app`: the HTTP protocol (Starlette).
"""

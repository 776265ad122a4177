"""A small local web app that collects a class's handwritten digits into a folder.

``mnistgap-collect --dir DIR`` serves a page on which each member of a group draws (or
uploads) the digits 0-9; every accepted drawing is stored as ``<digit>-<group>-<member>.png``
in ``DIR``, checked with the same loader and quality filter as the ``prepare_class`` stage,
so ``DIR`` can be used as ``class_digits.dir`` as it is.

Modules: ``loader`` (the only place that imports the class-digit loader), ``store`` (atomic,
no-clobber writes), ``upload`` (a size-capped multipart reader), ``app`` (the FastAPI app
factory), ``classroom`` (class mode: the class code, member tokens, limits), ``teacher`` (the
teacher view's progress, leakage flags and QR code), ``cli`` (the console command), ``server``
(run the command in the background, for tests, demos and benchmarks) and ``synthetic``
(stroke-drawn digits for the same).
"""

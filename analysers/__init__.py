"""MistAnalyser* command-line inspectors. Each format module defines an ``Analyser``
subclass of :class:`analysers.common.Analyser` and a ``main`` built with
:func:`analysers.common.make_main`."""

"""The PySide6 annotation app (`kbh annotate WS`): thin widgets over Qt-free session and controller classes."""

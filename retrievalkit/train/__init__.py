"""Training: the trainer loop, objectives, optimizers, data-parallel runtime.

``rk.train(recipe, out=...)`` trains a recipe. Python binds this sub-package as the
attribute ``retrievalkit.train`` as soon as anything imports a module under it, so
that name cannot stay a plain function; the package is callable instead, and a
call is :func:`retrievalkit.train.launch.train_recipe` (what the plain function
:func:`retrievalkit.api.train` and ``retrievalkit train`` call too), returning the
run directory. Nothing here imports a layer above ``train``.
"""

import sys
import types
from pathlib import Path
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        """``rk.train(recipe, out=None, overrides=(), device=None, resume=False,
        progress=True)`` -> the run directory (see ``retrievalkit.api.train``)."""
        from retrievalkit.train.launch import train_recipe

        return train_recipe(*args, **kwargs)[0]


sys.modules[__name__].__class__ = _CallablePackage

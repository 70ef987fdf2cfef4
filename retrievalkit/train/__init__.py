"""Training: the trainer loop, objectives, optimizers, data-parallel runtime.

The package is callable: ``retrievalkit.train(recipe, out=...)`` trains a recipe
(:func:`retrievalkit.api.train`). Python binds a package's sub-package as an
attribute once it is imported, so ``rk.train`` is this package whatever was
imported before; calling it is the API call.
"""

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from retrievalkit.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

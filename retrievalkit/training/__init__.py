"""Training: the trainer loop, objectives, optimizers, data-parallel runtime.

``rk.train(recipe, out=...)`` (the plain function :func:`retrievalkit.api.train`),
``retrievalkit train`` and :func:`retrievalkit.training.launch.train_recipe` are one
path. The package is named ``training``, not ``train``, so that ``rk.train`` stays a
function: Python binds a sub-package as an attribute of its parent when it is imported.
Nothing here imports a layer above ``training``.
"""

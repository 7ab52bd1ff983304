"""A host under many users and kernels: the scale test (a package, so that its helper is ``scale.scalehost``)."""

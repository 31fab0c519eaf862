"""halo-reconciler's names that no application takes (see ``halo_reconciler.hooks``)."""

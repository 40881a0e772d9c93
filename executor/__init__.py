"""The Ancho Mesos executor: load the model, run batches, store results, report."""

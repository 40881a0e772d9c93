"""The Ancho Mesos framework: run state machine, offer matching, pymesos glue."""

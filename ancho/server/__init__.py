"""``ancho server``: the Mesos framework and its REST API in one process.

``app`` (Flask factory, one blueprint per resource), ``stores`` (routing each run to its
owner's store), ``auth`` (bearer tokens), ``openapi`` (the document), ``main`` (waitress,
the scheduler, signals).
"""

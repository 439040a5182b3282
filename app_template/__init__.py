"""The pykratos reference service: orders over HTTP, gRPC and a message broker.

Layers (go-kratos layout): ``api`` (protobuf contract), ``biz`` (entities, use cases and the
interfaces they need), ``data`` (implementations of those interfaces: SQLAlchemy, broker
publishers), ``service`` (transport adapters: HTTP routes, gRPC servicer, subscribers),
``server`` (server construction from config), ``conf`` (typed config), ``container`` (the
dependency-injector wiring) and ``wire`` (building the App).
"""

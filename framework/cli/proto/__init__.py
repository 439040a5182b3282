"""``pykratos proto``: write a proto skeleton, generate Python code, write a service layer.

- :func:`~framework.cli.proto.skeleton.add_proto` writes ``api/<name>/v1/<x>.proto``.
- :func:`~framework.cli.proto.client.generate_client` runs grpcio-tools (messages, gRPC stubs,
  ``.pyi``) with the project root on the include path, writes the typed ``<x>_pb2_grpc.pyi``,
  creates the ``__init__.py`` files and writes ``<x>_errors.py`` for an ``ErrorReason`` enum.
- :func:`~framework.cli.proto.server.generate_server` writes a service-layer class per service
  whose every RPC raises ``framework.errors.NotImplemented_`` until filled in, or appends the
  methods of new RPCs to the class of a module written earlier.
"""

from framework.cli.proto.client import generate_client
from framework.cli.proto.server import generate_server
from framework.cli.proto.skeleton import add_proto

__all__ = ["add_proto", "generate_client", "generate_server"]

"""The HTTP parsers the fuzz targets call, behind one indirection: the shared HTTP/1.1 layer
(sidecars.runtime.http) that the ambassador, the adapter's client and the admin server all
use. Repoint these names when the layer moves and the targets follow. Each entry is the
parser and the errors it may raise."""

from __future__ import annotations

from sidecars.ambassador import httpwire
from sidecars.runtime.http import body, client, head, server

# Request and response heads (without the final blank line): the ambassador's and the
# adapter client's parser.
parse_request = head.parse_request
parse_response = head.parse_response
HEAD_ERRORS: tuple[type[Exception], ...] = (head.HttpError,)
MAX_LENGTH_DIGITS = head.MAX_LENGTH_DIGITS
MAX_FIELDS = head.MAX_FIELDS  # header lines in a head
# What the ambassador sends on: a request to a member, a response to the client.
forward_request = httpwire.forward_request
forward_response = httpwire.forward_response

# The admin/adapter server's request head.
parse_admin_head = server.parse_head
ADMIN_ERRORS: tuple[type[Exception], ...] = (server.BadRequest,)

# Streaming body framing: `Chunked(decode=True).feed(data) -> (data, rest)`, `.done`.
Chunked = body.Chunked
Length = body.Length
CHUNKED_ERRORS: tuple[type[Exception], ...] = (ValueError,)

# An answer read by the runtime's HTTP client from a connection's buffer: `Client._answer(conn,
# method)` gives an Answer whose `read(limit)` is the whole body.
Conn = client.Conn
Client = client.Client
ANSWER_ERRORS: tuple[type[Exception], ...] = (client.ClientError,)

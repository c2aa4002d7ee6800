"""The one HTTP/1.1 layer of the tree (RFC 9112): `head` parses request and response heads,
`body` finds where a message body ends as its bytes arrive, `server` answers the admin and
adapter ports, `client` reads answers for the adapter, the logshipper and health checks.
The ambassador's proxy parses and frames with the same `head` and `body`.

Every parser here bounds what it reads and refuses what could be read two ways (request
smuggling shapes): a message that is not exactly well-formed is an error, never a guess."""

"""One module per view: `async fetch(conn, server, ...)` returns plain rows, no prometheus."""

"""The front door: an HTTP/2 byte relay between the listen socket and the runtime's sockets."""

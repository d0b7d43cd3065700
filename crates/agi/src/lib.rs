//! FastAGI: the codec and session logic for Asterisk Gateway Interface sessions, with no sockets.

//! tandem: a collaborative text editing server for Yjs clients.

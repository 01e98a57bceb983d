//! The proxy core: everything between accepting a client and relaying its tunnel.

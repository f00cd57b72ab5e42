"""geodns: authoritative GeoDNS server."""

"""GeoIP data: the mmdb format read in bulk, locations, the open database, ASN data."""

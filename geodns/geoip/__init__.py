"""GeoIP data: the mmdb format read in bulk, locations, and the open database."""

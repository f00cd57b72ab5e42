"""GeoIP databases beyond the City/Country one that steering uses (ASN for now)."""

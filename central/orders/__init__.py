"""Orders, enrollments and kiosk credentials of the central service, and its JSON API."""

"""The headers every page the service sends carries (the web pages, the busy page): no
script, styles and images from the service itself, never framed by another site, no copy
kept in a shared browser's cache."""

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # pages name persons: no copy stays in a shared browser's cache
    "Cache-Control": "no-store",
}

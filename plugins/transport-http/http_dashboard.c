/* The dashboard: a page for operators (dashboard/, embedded at build time), served from the
 * same origin as the API it calls. The files are public and hold no bus data and no secret:
 * the page asks for a key or token and calls the API with it.
 *
 * Every file goes out with a Content-Security-Policy that allows only this origin's scripts,
 * styles, images and fetches (no inline script, no other site), and may not be framed. */
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "http_assets.h"

static const char *const security_headers[] = {
    "Content-Security-Policy",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options",
    "nosniff",
    "X-Frame-Options",
    "DENY",
    "Referrer-Policy",
    "no-referrer",
    NULL,
};

void http_dashboard__serve(struct http_req *req, const char *url)
{
    size_t len = 0;
    const char *seg =
        strcmp(url, "/dashboard") == 0 ? "index.html" : http_routes__segment(url, &len);
    if (seg && !len)
        len = strlen(seg);
    for (const struct http_asset *a = http_assets; seg && a->name; a++) {
        if (strlen(a->name) == len && memcmp(a->name, seg, len) == 0) {
            http_reply_static(req, MHD_HTTP_OK, a->content_type, a->data, a->len, security_headers);
            return;
        }
    }
    char text[300];
    snprintf(text, sizeof text, "No endpoint at %s", url);
    http_reply_error(req, MHD_HTTP_NOT_FOUND, ARQ_ERR_NOT_FOUND, text);
}

/* transport-http: the dashboard's files (dashboard/), embedded in the plugin at build time by
 * embed_assets.cmake, so that the page needs no files installed beside the plugin and no
 * network beyond this server. */
#ifndef ARQ_TRANSPORT_HTTP_ASSETS_H
#define ARQ_TRANSPORT_HTTP_ASSETS_H

#include <stddef.h>

struct http_asset {
    const char *name;         /* the file's name under dashboard/, e.g. "app.js" */
    const char *content_type; /* with its charset for text */
    const unsigned char *data;
    size_t len;
};

/* Every file, ended by an entry whose name is NULL. Static data: never freed. */
extern const struct http_asset http_assets[];

#endif

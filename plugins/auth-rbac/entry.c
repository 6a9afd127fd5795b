/* The one symbol the auth-rbac module exports. The plugin lives in auth_rbac.c; it is linked
 * into the unit tests without this file, which would give them a second arq_plugin_v1. */
#include "rbac.h"

ARQ_PLUGIN(rbac_descriptor)

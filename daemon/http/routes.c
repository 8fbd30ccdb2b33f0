/* THE route table: every API route, its body kind and, for changes, the audit action.
 * api/openapi.yaml must describe exactly these (tests/api/test-openapi.py checks). */
#include "handlers.h"
#include "route.h"

#define KiB 1024

const Route routes[] = {
        { HTTP_GET, "/v1/health", health_get },
        { HTTP_GET, "/v1/version", version_info_get },
        { HTTP_GET, "/metrics", metrics_get },
        { HTTP_GET, "/ui/", ui_index, .open = true },
        { HTTP_GET, "/ui/{file}", ui_file, .open = true },

        { HTTP_GET, "/v1/blobs", blob_list },
        { HTTP_GET, "/v1/blobs/{digest}", blob_get },
        { HTTP_PUT, "/v1/blobs/{digest}", blob_put_finish, BODY_STREAM, .max_body = 0, .action = "blob.upload",
          .stream_begin = blob_put_begin, .stream_data = blob_put_data },
        { HTTP_DELETE, "/v1/blobs/{digest}", blob_delete, .action = "blob.delete" },

        { HTTP_GET, "/v1/images", image_list },
        { HTTP_POST, "/v1/images", image_create, BODY_JSON, 4 * KiB, "image.create" },
        { HTTP_GET, "/v1/images/{name}", image_get },
        { HTTP_DELETE, "/v1/images/{name}", image_delete, .action = "image.delete" },

        { HTTP_GET, "/v1/images/{name}/versions", version_list },
        { HTTP_POST, "/v1/images/{name}/versions", version_create, BODY_JSON, 64 * KiB, "version.create" },
        { HTTP_GET, "/v1/images/{name}/versions/{ref}", version_get, .wrong_method = AVIARY_E_VERSION_IMMUTABLE,
          .wrong_method_message = "image versions are immutable: push a new version, or revoke this one" },
        { HTTP_DELETE, "/v1/images/{name}/versions/{ref}", version_delete, .action = "version.delete" },
        { HTTP_POST, "/v1/images/{name}/versions/{ref}/revoke", version_revoke, BODY_JSON, 4 * KiB,
          "version.revoke" },

        { HTTP_GET, "/v1/services", service_list },
        { HTTP_POST, "/v1/services", service_create, BODY_JSON, 16 * KiB, "service.create" },
        { HTTP_GET, "/v1/services/{name}", service_get },
        { HTTP_PATCH, "/v1/services/{name}", service_update, BODY_JSON, 16 * KiB, "service.update" },
        { HTTP_DELETE, "/v1/services/{name}", service_delete, .action = "service.delete" },
        { HTTP_GET, "/v1/services/{name}/traffic", service_traffic },
        { HTTP_POST, "/v1/services/{name}/sleep", service_sleep, BODY_NONE, .action = "service.sleep" },
        { HTTP_POST, "/v1/services/{name}/wake", service_wake, BODY_NONE, .action = "service.wake" },

        { HTTP_GET, "/v1/services/{name}/rollouts", rollout_list },
        { HTTP_POST, "/v1/services/{name}/rollouts", rollout_create, BODY_JSON, 64 * KiB, "rollout.create" },
        { HTTP_GET, "/v1/services/{name}/rollouts/{id}", rollout_get },
        { HTTP_POST, "/v1/services/{name}/rollouts/{id}/promote", rollout_promote, BODY_NONE, .action = "rollout.promote" },
        { HTTP_POST, "/v1/services/{name}/rollouts/{id}/pause", rollout_pause, BODY_NONE, .action = "rollout.pause" },
        { HTTP_POST, "/v1/services/{name}/rollouts/{id}/resume", rollout_resume, BODY_NONE, .action = "rollout.resume" },
        { HTTP_POST, "/v1/services/{name}/rollouts/{id}/abort", rollout_abort_request, BODY_NONE, .action = "rollout.abort" },
        { HTTP_POST, "/v1/services/{name}/rollouts/{id}/retry", rollout_retry, BODY_NONE, .action = "rollout.retry" },
        { HTTP_POST, "/v1/services/{name}/rollback", service_rollback, BODY_JSON, 4 * KiB, "rollout.rollback" },

        { HTTP_GET, "/v1/instances", instance_list },
        { HTTP_GET, "/v1/instances/{id}", instance_get },
        { HTTP_POST, "/v1/instances/{id}/restart", instance_restart, BODY_NONE, .action = "instance.restart" },
        { HTTP_GET, "/v1/instances/{id}/console", instance_console },

        { HTTP_GET, "/v1/events", event_list },

        { HTTP_GET, "/v1/tokens", token_list, .scope = SCOPE_ADMIN },
        { HTTP_POST, "/v1/tokens", token_create, BODY_JSON, 4 * KiB, "token.create" },
        { HTTP_DELETE, "/v1/tokens/{name}", token_delete, .action = "token.revoke" },
};

const size_t routes_count = ELEMENTSOF(routes);

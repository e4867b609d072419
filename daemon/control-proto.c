/* SPDX-License-Identifier: MIT */
#include "control-proto.h"

void control_buffer_done(ControlBuffer *b) {
        b->data = mfree(b->data);
        b->len = 0;
}

int control_buffer_feed(ControlBuffer *b, const void *p, size_t n) {
        const char *nul;
        size_t pending;
        char *c;

        /* What follows the last NUL is an incomplete message: it may not exceed the limit. */
        nul = b->len > 0 ? memrchr(b->data, 0, b->len) : NULL;
        pending = nul ? b->len - (size_t) (nul - b->data) - 1 : b->len;
        nul = memrchr(p, 0, n);
        pending = nul ? n - (size_t) (nul - (const char *) p) - 1 : pending + n;
        if (pending > CONTROL_MESSAGE_MAX || b->len + n > 4 * CONTROL_MESSAGE_MAX)
                return -EMSGSIZE;

        c = realloc(b->data, b->len + n);
        if (!c)
                return -ENOMEM;
        memcpy(c + b->len, p, n);
        b->data = c;
        b->len += n;
        return 0;
}

int control_buffer_next(ControlBuffer *b, char **ret) {
        char *nul, *msg;
        size_t n;

        if (b->len == 0)
                return 0;
        nul = memchr(b->data, 0, b->len);
        if (!nul)
                return 0;
        n = (size_t) (nul - b->data);
        if (n > CONTROL_MESSAGE_MAX)
                return -EMSGSIZE;
        msg = strndup(b->data, n);
        if (!msg)
                return -ENOMEM;
        memmove(b->data, nul + 1, b->len - n - 1);
        b->len -= n + 1;
        *ret = msg;
        return 1;
}

int control_request_parse(const char *msg, char **ret_method, cJSON **ret_parameters) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        cJSON *method, *params;
        char *m;

        root = cJSON_Parse(msg);
        if (!cJSON_IsObject(root))
                return -EBADMSG;
        method = cJSON_GetObjectItemCaseSensitive(root, "method");
        if (!cJSON_IsString(method) || isempty(method->valuestring) || strlen(method->valuestring) > 255)
                return -EBADMSG;
        params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
        if (params && !cJSON_IsObject(params) && !cJSON_IsNull(params))
                return -EBADMSG;

        m = strdup(method->valuestring);
        if (!m)
                return -ENOMEM;
        *ret_method = m;
        if (ret_parameters)
                *ret_parameters = cJSON_IsObject(params) ? cJSON_DetachItemViaPointer(root, params) : NULL;
        return 0;
}

static int control_format(cJSON *root, char **ret, size_t *ret_len) {
        char *s = cJSON_PrintUnformatted(root);

        if (!s)
                return -ENOMEM;
        if (strlen(s) > CONTROL_MESSAGE_MAX) {
                cJSON_free(s);
                return -EMSGSIZE;
        }
        *ret_len = strlen(s) + 1;
        *ret = s;
        return 0;
}

int control_request_format(const char *method, const cJSON *parameters, char **ret, size_t *ret_len) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();

        if (!root || !cJSON_AddStringToObject(root, "method", method))
                return -ENOMEM;
        if (parameters && !cJSON_AddItemToObject(root, "parameters", cJSON_Duplicate(parameters, true)))
                return -ENOMEM;
        return control_format(root, ret, ret_len);
}

int control_reply_format(const cJSON *parameters, const char *error, const char *message, char **ret,
                         size_t *ret_len) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();

        if (!root || !cJSON_AddNumberToObject(root, "version", CONTROL_PROTOCOL_VERSION))
                return -ENOMEM;
        if (error) {
                if (!cJSON_AddStringToObject(root, "error", error) ||
                    (message && !cJSON_AddStringToObject(root, "message", message)))
                        return -ENOMEM;
        } else if (!cJSON_AddItemToObject(root, "parameters",
                                          parameters ? cJSON_Duplicate(parameters, true) : cJSON_CreateObject()))
                return -ENOMEM;
        return control_format(root, ret, ret_len);
}

int control_reply_parse(const char *msg, cJSON **ret_parameters, char **ret_error, char **ret_message) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        cJSON *version, *error, *message, *params;

        root = cJSON_Parse(msg);
        if (!cJSON_IsObject(root))
                return -EBADMSG;
        version = cJSON_GetObjectItemCaseSensitive(root, "version");
        if (!cJSON_IsNumber(version))
                return -EBADMSG;
        if (version->valuedouble != CONTROL_PROTOCOL_VERSION)
                return -EPROTO;

        error = cJSON_GetObjectItemCaseSensitive(root, "error");
        message = cJSON_GetObjectItemCaseSensitive(root, "message");
        params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
        if (cJSON_IsString(error)) {
                _cleanup_free_ char *e = strdup(error->valuestring), *m = NULL;

                if (!e)
                        return -ENOMEM;
                if (cJSON_IsString(message)) {
                        m = strdup(message->valuestring);
                        if (!m)
                                return -ENOMEM;
                }
                *ret_error = TAKE_PTR(e);
                *ret_message = TAKE_PTR(m);
                *ret_parameters = NULL;
                return 0;
        }
        if (!cJSON_IsObject(params))
                return -EBADMSG;
        *ret_error = NULL;
        *ret_message = NULL;
        *ret_parameters = cJSON_DetachItemViaPointer(root, params);
        return 0;
}

/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "xml-walk.h"

static void xml_walk_fail(XmlWalk *w, int error) {
        if (w->error == 0)
                w->error = error;
        (void) XML_StopParser(w->parser, XML_FALSE);
}

const char *xml_walk_root(const XmlWalk *w) {
        return w->path[1];
}

bool xml_walk_is_error(const XmlWalk *w) {
        return streq(w->path[1], "Error");
}

bool xml_walk_at(const XmlWalk *w, unsigned d, const char *name) {
        return d >= 1 && d <= w->depth && streq(w->path[d], name);
}

int xml_walk_error_document(XmlWalk *w, int r, char **ret_code, char **ret_message) {
        if (w->error != 0 || !xml_walk_is_error(w))
                return r < 0 ? r : -EBADMSG;
        *ret_code = TAKE_PTR(w->code);
        *ret_message = TAKE_PTR(w->message);
        return 0;
}

int xml_walk_take(char **dst, const char *text, size_t len) {
        char *c = strndup(text, len);

        if (!c)
                return -ENOMEM;
        free(*dst);
        *dst = c;
        return 0;
}

static void XMLCALL xml_walk_on_start(void *userdata, const XML_Char *name, const XML_Char **attrs) {
        XmlWalk *w = userdata;

        if (w->error != 0)
                return;
        if (w->depth >= XML_WALK_DEPTH_MAX) {
                xml_walk_fail(w, -EBADMSG);
                return;
        }
        w->depth++;
        snprintf(w->path[w->depth], sizeof(w->path[w->depth]), "%s", name);
        w->text_len = 0;
        w->overflow = false;
        if (w->on_start && !xml_walk_is_error(w)) {
                int r = w->on_start(w, w->depth, name);
                if (r < 0)
                        xml_walk_fail(w, r);
        }
}

static int xml_walk_error_field(XmlWalk *w, const char *name) {
        if (w->depth != 2)
                return 0;
        if (streq(name, "Code"))
                return w->overflow ? -EFBIG : xml_walk_take(&w->code, w->text, w->text_len);
        if (streq(name, "Message"))
                return xml_walk_take(&w->message, w->text, w->text_len); /* shortened is fine */
        return 0;
}

static void XMLCALL xml_walk_on_end(void *userdata, const XML_Char *name) {
        XmlWalk *w = userdata;
        int r = 0;

        if (w->error != 0)
                return;
        w->text[w->text_len] = 0;
        if (w->overflow && w->depth <= w->overflow_fails_to_depth)
                r = -EFBIG;
        else if (xml_walk_is_error(w))
                r = xml_walk_error_field(w, name);
        else if (w->on_end)
                r = w->on_end(w, w->depth, name, w->text, w->text_len, w->overflow);
        if (r < 0) {
                xml_walk_fail(w, r);
                return;
        }
        w->text_len = 0;
        w->overflow = false;
        w->depth--;
}

static void XMLCALL xml_walk_on_text(void *userdata, const XML_Char *s, int len) {
        XmlWalk *w = userdata;
        size_t n = (size_t) MAX(len, 0);

        if (w->error != 0)
                return;
        if (w->text_len + n > XML_WALK_TEXT_MAX) {
                w->overflow = true;
                n = XML_WALK_TEXT_MAX - w->text_len;
        }
        memcpy(w->text + w->text_len, s, n);
        w->text_len += n;
}

static void XMLCALL xml_walk_on_doctype(void *userdata, const XML_Char *name, const XML_Char *sysid,
                                        const XML_Char *pubid, int has_internal_subset) {
        xml_walk_fail(userdata, -EBADMSG); /* no DTD, hence no entity declarations at all */
}

static void XMLCALL xml_walk_on_entity(void *userdata, const XML_Char *name, int pe, const XML_Char *value, int len,
                                       const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
                                       const XML_Char *notation) {
        xml_walk_fail(userdata, -EBADMSG);
}

static int XMLCALL xml_walk_on_external(XML_Parser p, const XML_Char *ctx, const XML_Char *base,
                                        const XML_Char *sysid, const XML_Char *pubid) {
        return XML_STATUS_ERROR;
}

int xml_walk_run(XmlWalk *w, const char *xml, size_t len) {
        if (len > XML_WALK_SIZE_MAX)
                return -EFBIG;
        w->parser = XML_ParserCreate("UTF-8");
        if (!w->parser)
                return -ENOMEM;
        XML_SetUserData(w->parser, w);
        XML_SetElementHandler(w->parser, xml_walk_on_start, xml_walk_on_end);
        XML_SetCharacterDataHandler(w->parser, xml_walk_on_text);
        XML_SetStartDoctypeDeclHandler(w->parser, xml_walk_on_doctype);
        XML_SetEntityDeclHandler(w->parser, xml_walk_on_entity);
        XML_SetExternalEntityRefHandler(w->parser, xml_walk_on_external);
        (void) XML_SetParamEntityParsing(w->parser, XML_PARAM_ENTITY_PARSING_NEVER);
        if (XML_Parse(w->parser, xml ?: "", (int) len, XML_TRUE) != XML_STATUS_OK && w->error == 0)
                w->error = -EBADMSG;
        return w->error;
}

void xml_walk_done(XmlWalk *w) {
        if (w->parser)
                XML_ParserFree(w->parser);
        w->parser = NULL;
        w->code = mfree(w->code);
        w->message = mfree(w->message);
}

/* SPDX-License-Identifier: MIT */
#pragma once

#include <expat.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* A bounded walk over an object store's XML answer with expat (S3's and Azure's dialects): no
 * DTD, hence no entity declarations and no external entities; at most XML_WALK_DEPTH_MAX deep;
 * element texts kept up to XML_WALK_TEXT_MAX (overflow is flagged, the text shortened); documents
 * larger than XML_WALK_SIZE_MAX refused. An <Error> document's Code and Message (at depth 2) are
 * kept in code/message and the callbacks are not called for it. */

#define XML_WALK_SIZE_MAX (8U * 1024U * 1024U)
#define XML_WALK_DEPTH_MAX 16U
#define XML_WALK_TEXT_MAX 4096U
#define XML_WALK_NAME_MAX 64U   /* element names are kept shortened to this */

typedef struct XmlWalk XmlWalk;
/* depth: of the element (1 for the root). A negative errno stops the walk with it. */
typedef int (*XmlWalkStart)(XmlWalk *w, unsigned depth, const char *name);
typedef int (*XmlWalkEnd)(XmlWalk *w, unsigned depth, const char *name, const char *text, size_t len,
                          bool overflow);

struct XmlWalk {
        /* Set by the caller (the rest zeroed). */
        XmlWalkStart on_start;
        XmlWalkEnd on_end;
        void *userdata;
        /* An element whose text overflowed at this depth or shallower fails the walk with
         * -EFBIG before its callback (0: callbacks decide; an <Error>'s Code always fails). */
        unsigned overflow_fails_to_depth;

        XML_Parser parser;
        int error;
        unsigned depth;
        char path[XML_WALK_DEPTH_MAX + 1][XML_WALK_NAME_MAX]; /* names by depth, path[1] the root */
        char text[XML_WALK_TEXT_MAX + 1];
        size_t text_len;
        bool overflow;
        char *code, *message;   /* of an <Error> document */
};

/* 0 or the walk's error (-EBADMSG malformed or refused, -EFBIG, -ENOMEM, a callback's). The
 * caller maps an <Error> document (xml_walk_is_error) to its own errno. */
int xml_walk_run(XmlWalk *w, const char *xml, size_t len);
void xml_walk_done(XmlWalk *w);

const char *xml_walk_root(const XmlWalk *w);
bool xml_walk_is_error(const XmlWalk *w);
/* Is the element at depth d (of those open now) named name? */
bool xml_walk_at(const XmlWalk *w, unsigned d, const char *name);
/* After a walk that returned r: an <Error> document that parsed hands out its Code and Message
 * (0); anything else is r, or -EBADMSG when r is not an error. */
int xml_walk_error_document(XmlWalk *w, int r, char **ret_code, char **ret_message);
/* *dst = a copy of text (the old one freed). */
int xml_walk_take(char **dst, const char *text, size_t len);

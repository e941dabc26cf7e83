#include "control.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void control_init(struct control *c, struct model *ab, struct model *ba)
{
    c->cut = 0;
    c->models[0] = ab;
    c->models[1] = ba;
    for (int i = 0; i < 2; i++) {
        c->base_delay_s[i] = c->models[i]->delay_s;
        c->base_loss[i] = c->models[i]->loss;
    }
}

int control_state(const struct control *c, char *out, size_t size)
{
    const struct model *m = c->models[0];
    return snprintf(out, size, "\"cut\": %s, \"delay_ms\": %.17g, \"loss_pct\": %.17g",
                    c->cut ? "true" : "false", m->delay_s * 1e3, m->loss * 100.0);
}

struct parsed {
    int has_cut, cut;
    int has_loss, loss_null;
    double loss_pct;
    int has_delay, delay_null;
    double delay_ms;
};

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p;
}

/* A JSON string without escapes (the keys are plain words). */
static const char *parse_key(const char *p, const char *end, char *key, size_t size)
{
    if (p >= end || *p != '"')
        return NULL;
    p++;
    size_t n = 0;
    while (p < end && *p != '"') {
        if (*p == '\\' || n + 1 >= size)
            return NULL;
        key[n++] = *p++;
    }
    if (p >= end)
        return NULL;
    key[n] = 0;
    return p + 1;
}

static int word_at(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

/* A JSON number or null; *is_null set. Returns the end, NULL when neither. */
static const char *parse_value(const char *p, const char *end, double *v, int *is_null,
                               int *is_bool, int *bool_value)
{
    *is_null = *is_bool = 0;
    if (word_at(p, end, "null")) {
        *is_null = 1;
        return p + 4;
    }
    if (word_at(p, end, "true")) {
        *is_bool = *bool_value = 1;
        return p + 4;
    }
    if (word_at(p, end, "false")) {
        *is_bool = 1;
        *bool_value = 0;
        return p + 5;
    }
    char buf[64];
    size_t n = 0;
    while (p + n < end && n + 1 < sizeof buf && strchr("+-0123456789.eE", p[n]))
        n++;
    if (n == 0)
        return NULL;
    memcpy(buf, p, n);
    buf[n] = 0;
    char *stop;
    *v = strtod(buf, &stop);
    if (*stop != 0)
        return NULL;
    return p + n;
}

static int refuse(char *answer, size_t size, const char *why)
{
    snprintf(answer, size, "{\"ok\": false, \"error\": \"%s\"}", why);
    return -1;
}

int control_handle(struct control *c, const char *msg, size_t len, char *answer,
                   size_t answer_size)
{
    if (len > CONTROL_MAX_MESSAGE)
        return refuse(answer, answer_size, "message too long");
    const char *p = msg, *end = msg + len;
    struct parsed q = {0};
    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        return refuse(answer, answer_size, "not a JSON object");
    p = skip_ws(p + 1, end);
    int members = 0;
    while (p < end && *p != '}') {
        char key[32];
        double v = 0;
        int is_null, is_bool, bv = 0;
        if (members && *p == ',')
            p = skip_ws(p + 1, end);
        else if (members)
            return refuse(answer, answer_size, "not a JSON object");
        p = parse_key(p, end, key, sizeof key);
        if (!p)
            return refuse(answer, answer_size, "not a JSON object");
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return refuse(answer, answer_size, "not a JSON object");
        p = parse_value(skip_ws(p + 1, end), end, &v, &is_null, &is_bool, &bv);
        if (!p)
            return refuse(answer, answer_size, "not a JSON object");
        p = skip_ws(p, end);
        members++;
        if (strcmp(key, "cut") == 0) {
            if (!is_bool)
                return refuse(answer, answer_size, "cut: expected true or false");
            q.has_cut = 1;
            q.cut = bv;
        } else if (strcmp(key, "loss_pct") == 0 || strcmp(key, "delay_ms") == 0) {
            int loss = key[0] == 'l';
            double top = loss ? 100.0 : CONTROL_MAX_DELAY_MS;
            if (is_bool || (!is_null && (!isfinite(v) || v < 0 || v > top
                                         || (loss && v >= 100.0))))
                return refuse(answer, answer_size, loss
                              ? "loss_pct: expected a number from 0, below 100, or null"
                              : "delay_ms: expected a number from 0, at most 10000, or null");
            if (loss) {
                q.has_loss = 1;
                q.loss_null = is_null;
                q.loss_pct = v;
            } else {
                q.has_delay = 1;
                q.delay_null = is_null;
                q.delay_ms = v;
            }
        } else {
            return refuse(answer, answer_size, "unknown key, expected some of cut, loss_pct, "
                                               "delay_ms");
        }
    }
    if (p >= end || skip_ws(p + 1, end) != end || members == 0)
        return refuse(answer, answer_size, "expected a JSON object with some of cut, "
                                           "loss_pct, delay_ms");
    if (q.has_cut)
        c->cut = q.cut;
    for (int i = 0; i < 2; i++) {
        struct model *m = c->models[i];
        if (q.has_delay)
            m->delay_s = q.delay_null ? c->base_delay_s[i] : q.delay_ms / 1e3;
        if (q.has_loss)
            m->loss = q.loss_null ? c->base_loss[i] : q.loss_pct / 100.0;
    }
    char state[256];
    control_state(c, state, sizeof state);
    snprintf(answer, answer_size, "{\"ok\": true, %s}", state);
    return 0;
}

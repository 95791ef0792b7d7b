/*
 * ed_models.c - a small reference-counted cache of parsed models.
 */
#include "ed_models.h"

#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>

#include "ecgprune/ep_model.h"

typedef struct model_entry {
    int64_t id;            /* 0: free slot, -1: forgotten, awaiting refs */
    ep_net *net;
    int refs;
    uint64_t last_used;
} model_entry;

struct ed_models {
    model_entry entries[ED_MODELS_CACHE * 2];
    uint64_t clock;
};

#define N_ENTRIES (ED_MODELS_CACHE * 2)

int ed_models_create(ed_models **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -1;
}

void ed_models_free(ed_models *m)
{
    int i;

    if (!m)
        return;
    for (i = 0; i < N_ENTRIES; i++)
        ep_net_free(m->entries[i].net);
    free(m);
}

int ed_models_sha256(const unsigned char *buf, size_t len, char hex[65])
{
    unsigned char digest[32];
    int i;

    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, len, digest) < 0)
        return -1;
    for (i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/* A slot for a new entry: a free one, else the least recently used
 * entry nobody holds; -1 when all are in use. */
static int free_slot(ed_models *m)
{
    int i, best = -1;

    for (i = 0; i < N_ENTRIES; i++)
        if (m->entries[i].id == 0)
            return i;
    for (i = 0; i < N_ENTRIES; i++)
        if (m->entries[i].refs == 0 &&
            (best < 0 || m->entries[i].last_used <
                         m->entries[best].last_used))
            best = i;
    if (best >= 0) {
        ep_net_free(m->entries[best].net);
        m->entries[best].net = NULL;
        m->entries[best].id = 0;
    }
    return best;
}

int ed_models_acquire(ed_app *app, int64_t id, const ep_net **net,
                      char *err, size_t es)
{
    ed_models *m = app->models;
    unsigned char *blob = NULL;
    size_t len = 0;
    ep_error e = {0};
    ep_net *parsed;
    int i, rc;

    for (i = 0; i < N_ENTRIES; i++) {
        if (m->entries[i].id == id) {
            m->entries[i].refs++;
            m->entries[i].last_used = ++m->clock;
            *net = m->entries[i].net;
            return 0;
        }
    }

    /* Not cached: parse it from the store. */
    rc = ed_store_blob(app->store, &blob, &len,
                       "SELECT weights FROM models WHERE id = ?", "i", id);
    if (rc == 0) {
        snprintf(err, es, "no model with id %lld", (long long)id);
        return 404;
    }
    if (rc < 0) {
        snprintf(err, es, "store: %s", ed_store_errmsg(app->store));
        return 500;
    }
    rc = ep_model_load_buffer(blob, len, &parsed, &e);
    free(blob);
    if (rc) {
        snprintf(err, es, "stored model %lld does not parse: %s",
                 (long long)id, e.msg);
        return 500;
    }
    i = free_slot(m);
    if (i < 0) {
        ep_net_free(parsed);
        snprintf(err, es, "too many models in use at once (%d); retry "
                 "shortly", N_ENTRIES);
        return 503;
    }
    m->entries[i].id = id;
    m->entries[i].net = parsed;
    m->entries[i].refs = 1;
    m->entries[i].last_used = ++m->clock;
    *net = parsed;
    return 0;
}

void ed_models_release(ed_app *app, const ep_net *net)
{
    ed_models *m = app->models;
    int i;

    for (i = 0; i < N_ENTRIES; i++) {
        model_entry *e = &m->entries[i];
        if (e->net != net)
            continue;
        e->refs--;
        if (e->refs == 0 && e->id == -1) {
            ep_net_free(e->net);
            e->net = NULL;
            e->id = 0;
        }
        return;
    }
}

void ed_models_forget(ed_app *app, int64_t id)
{
    ed_models *m = app->models;
    int i;

    for (i = 0; i < N_ENTRIES; i++) {
        model_entry *e = &m->entries[i];
        if (e->id != id)
            continue;
        if (e->refs == 0) {
            ep_net_free(e->net);
            e->net = NULL;
            e->id = 0;
        } else {
            e->id = -1;
        }
    }
}

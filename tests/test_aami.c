/*
 * test_aami.c - the AAMI class of every MIT annotation code, checked
 * against the table of de Chazal, O'Dwyer and Reilly (2004) written here
 * by mnemonic: N = N L R e j, S = A a J S, V = V E, F = F, Q = / f Q, and
 * no class for any other code.
 */
#include <string.h>

#include "check.h"
#include "ecgprune/ep_aami.h"
#include "ecgprune/ep_wfdb.h"

static const struct {
    const char *symbols;
    ep_aami cls;
} de_chazal[] = {
    {"NLRej", EP_AAMI_N},
    {"AaJS", EP_AAMI_S},
    {"VE", EP_AAMI_V},
    {"F", EP_AAMI_F},
    {"/fQ", EP_AAMI_Q},
};

/* The expected class of a mnemonic from the table above. */
static ep_aami expected_class(const char *symbol)
{
    if (strlen(symbol) != 1)
        return EP_AAMI_NONE;
    for (size_t i = 0; i < sizeof de_chazal / sizeof de_chazal[0]; i++)
        if (strchr(de_chazal[i].symbols, symbol[0]) != NULL)
            return de_chazal[i].cls;
    return EP_AAMI_NONE;
}

int main(void)
{
    int classed = 0;

    /* Every code 0..63 (and beyond) maps as the table says. */
    for (int code = -1; code <= 64; code++) {
        const char *sym = ep_wfdb_code_symbol(code);
        ep_aami want = code >= 1 && code <= 49 ? expected_class(sym)
                                               : EP_AAMI_NONE;

        CHECK_MSG(ep_aami_from_code(code) == want, "code %d (%s): %d, "
                  "expected %d", code, sym, ep_aami_from_code(code), want);
        classed += want != EP_AAMI_NONE;
    }
    CHECK_EQ_INT(classed, 15);

    /* Every AAMI-classed code is a WFDB beat; '!' and '?' are beats
     * without a class. */
    for (int code = 1; code <= 49; code++)
        if (ep_aami_from_code(code) != EP_AAMI_NONE)
            CHECK(ep_wfdb_is_beat(code));
    CHECK_EQ_INT(ep_aami_from_code(ep_wfdb_symbol_code("!")), EP_AAMI_NONE);
    CHECK_EQ_INT(ep_aami_from_code(ep_wfdb_symbol_code("+")), EP_AAMI_NONE);

    /* Names and their inverse. */
    CHECK(strcmp(ep_aami_name(EP_AAMI_N), "N") == 0);
    CHECK(strcmp(ep_aami_name(EP_AAMI_Q), "Q") == 0);
    CHECK(strcmp(ep_aami_name(EP_AAMI_NONE), "none") == 0);
    for (int c = 0; c < EP_AAMI_COUNT; c++)
        CHECK_EQ_INT(ep_aami_from_name(ep_aami_name((ep_aami)c)), c);
    CHECK_EQ_INT(ep_aami_from_name("X"), EP_AAMI_NONE);
    return check_exit();
}

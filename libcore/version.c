/* version.c - the library's version at run time. */
#include "config.h"

#include "plast/plast.h"

const char *plast_version(void)
{
    return PLAST_VERSION_STRING;
}

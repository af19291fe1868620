/*
 * error.c - names of buffdb error codes
 */
#include "config.h"

#include "common/error.h"

const char *
bfdb_strerror(int code)
{
    switch (code) {
    case BFDB_OK: return "success";
    case BFDB_ENOTFOUND: return "not found";
    case BFDB_EINVAL: return "invalid argument";
    case BFDB_EBUSY: return "store is busy";
    case BFDB_EIO: return "i/o error";
    case BFDB_EFULL: return "disk full";
    case BFDB_ECORRUPT: return "corrupt store";
    case BFDB_ENOMEM: return "out of memory";
    case BFDB_ESQL: return "sql error";
    case BFDB_ECONSTRAINT: return "constraint violated";
    case BFDB_EPERM: return "permission denied";
    case BFDB_ECANTOPEN: return "cannot open store";
    case BFDB_ETOOBIG: return "too big";
    case BFDB_EINTERRUPTED: return "interrupted";
    case BFDB_EINTERNAL: return "internal error";
    case BFDB_EEXIST: return "already exists";
    case BFDB_EPRECOND: return "failed precondition";
    }
    return "unknown error";
}

/*
 * error.h - buffdb error codes
 *
 * Every buffdb function that can fail returns an int: 0 (BFDB_OK) or one
 * of the negative codes below.  The human-readable detail (what failed,
 * SQLite's own text) travels separately, in the handle's error buffer; see
 * bfdb_store_errmsg().  bfdb_strerror() names a code.
 */
#ifndef BFDB_COMMON_ERROR_H
#define BFDB_COMMON_ERROR_H

enum bfdb_err {
    BFDB_OK = 0,
    BFDB_ENOTFOUND = -1,   /* key or id does not exist */
    BFDB_EINVAL = -2,      /* bad argument: id out of range, bad SQL text */
    BFDB_EBUSY = -3,       /* store locked by another writer past timeout */
    BFDB_EIO = -4,         /* disk I/O error */
    BFDB_EFULL = -5,       /* disk or database full */
    BFDB_ECORRUPT = -6,    /* file is corrupt or not a buffdb store */
    BFDB_ENOMEM = -7,      /* out of memory */
    BFDB_ESQL = -8,        /* SQL error in a raw query */
    BFDB_ECONSTRAINT = -9, /* constraint violated */
    BFDB_EPERM = -10,      /* read-only file, permission or authorizer */
    BFDB_ECANTOPEN = -11,  /* store file cannot be opened or created */
    BFDB_ETOOBIG = -12,    /* value too large */
    BFDB_EINTERRUPTED = -13, /* cancelled or past its deadline */
    BFDB_EINTERNAL = -14,  /* a bug: should not happen */
    BFDB_EEXIST = -15,     /* name taken; unique index value taken */
    BFDB_EPRECOND = -16    /* the request does not fit the object's state
                            * (Range on a hash index, data breaking a new
                            * unique index) */
};

/* bfdb_strerror - a short lowercase name for an error code */
const char *bfdb_strerror(int code);

#endif /* BFDB_COMMON_ERROR_H */

/*
 * Who a request comes from, for the gateway's limits (gateway.conf.template, `js_set
 * $shop_verified_user identity.user`): the subject of a bearer token that the gateway verified
 * itself, or nobody, and then the request counts against its client address.
 *
 * A token is vouched for when it is an HS256 JWT signed with JWT_SECRET (passed to nginx's
 * workers by the `env JWT_SECRET;` line of the main configuration) whose `exp` is still ahead
 * and whose `nbf`, if any, is past. The key is then "u:" + its `sub`: every token of one user,
 * and every textual variant of one token (a padded signature, another letter case of "Bearer"),
 * is one identity. The services still check every token themselves (issuer, audience,
 * lifetime, the user in the path); this only decides whose quota a request takes, so a made-up
 * or expired token buys none of its own.
 *
 * njs 0.7 (Debian's libnginx-mod-http-js) and 0.8 (the official nginx image): synchronous code
 * only (a js_set handler), no WebCrypto.
 */
import crypto from 'crypto';

var BEARER = /^bearer +([A-Za-z0-9_-]{1,4096})\.([A-Za-z0-9_-]{1,8192})\.([A-Za-z0-9_-]{43})=* *$/i;
var SUBJECT = /^[\x21-\x7e]{1,128}$/;

function json(segment) {
    try {
        var value = JSON.parse(Buffer.from(segment, 'base64url').toString());
        return value !== null && typeof value === 'object' ? value : null;
    } catch (e) {
        return null;
    }
}

/* Equal 32-byte HMACs, compared in constant time: no timing tells how much of a forged
 * signature was right. */
function sameMac(given, expected) {
    if (given.length !== 32 || expected.length !== 32) {
        return false;
    }
    var diff = 0;
    for (var i = 0; i < 32; i++) {
        diff |= given[i] ^ expected[i];
    }
    return diff === 0;
}

/* "u:<sub>" of a verified token in the Authorization header; "" for anything else. */
function user(r) {
    var secret = process.env.JWT_SECRET;
    var found = BEARER.exec(r.headersIn.Authorization || '');
    if (!secret || !found) {
        return '';
    }
    var mac = crypto.createHmac('sha256', secret).update(found[1] + '.' + found[2]).digest();
    if (!sameMac(Buffer.from(found[3], 'base64url'), mac)) {
        return '';
    }
    var header = json(found[1]);
    var claims = json(found[2]);
    if (header === null || header.alg !== 'HS256' || claims === null) {
        return '';
    }
    var now = Date.now() / 1000;
    if (typeof claims.exp !== 'number' || claims.exp <= now) {
        return '';
    }
    if (claims.nbf !== undefined && !(typeof claims.nbf === 'number' && claims.nbf <= now)) {
        return '';
    }
    if (typeof claims.sub !== 'string' || !SUBJECT.test(claims.sub)) {
        return '';
    }
    return 'u:' + claims.sub;
}

export default {user: user};

;;; meta-log-federation-versions-test.el --- A peer of the old protocol version is refused, clearly  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Protocol version 2 (private shares) refuses version-1 events.  The
;; old peer here is a plain MQTT client (mosquitto_pub) publishing
;; correctly signed version-1 events, exactly what an Emacs running the
;; previous release publishes; this Emacs, on a real broker, is the new
;; peer.  It must refuse them, say so once per peer (naming it through
;; the safe label, with both versions and what to do), and change
;; nothing else.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-hostile-test)
(require 'json)

;; Defined with the other cross-checks; test/run-tests.el loads every suite.
(declare-function meta-log-federation-test-run-crosscheck "meta-log-federation-identity-test" (events))

(defconst meta-log-federation-versions-test-old "1"
  "The protocol version before this one, spoken by a peer not yet updated.")

(defun meta-log-federation-versions-test-presence (identity name)
  "Return a version-1 presence of IDENTITY announcing NAME.
It is what the previous release signs and publishes."
  (meta-log-federation-sign-event
   identity 20770
   (json-encode `((peer_id . ,(meta-log-federation-identity-peer-id identity))
                  (name . ,name) (software . "meta-log-federation/0.1.0")
                  (protocol . ,meta-log-federation-versions-test-old)
                  (capabilities . ["canvasl-sync" "nip44-messages"])
                  (status . "online") (since . ,(truncate (float-time)))))
   `(("v" ,meta-log-federation-versions-test-old) ("t" "presence"))))

(defun meta-log-federation-versions-test-change (identity)
  "Return a version-1 sync change signed by IDENTITY."
  (meta-log-federation-sign-event
   identity 4771 "{\"v\":1,\"share\":\"canvasl://x/y.canvasl\",\"op\":\"change\"}"
   `(("v" ,meta-log-federation-versions-test-old) ("t" "sync"))))

(ert-deftest versions::an-old-peer-is-refused-with-one-clear-warning ()
  "A version-1 peer's presence and change: refused, one warning, nothing else."
  (meta-log-federation-test-with-federation
    (should-not (equal (meta-log-federation--protocol-version)
                       meta-log-federation-versions-test-old))
    (let* ((old (meta-log-federation-test-hostile-identity))
           (old-id (meta-log-federation-identity-peer-id old))
           (before (meta-log-federation-drop-count "protocol-version"))
           (meta-log-federation--version-warned nil)
           (warnings nil))
      (cl-letf (((symbol-function 'display-warning)
                 (lambda (_type message &rest _) (push message warnings))))
        (meta-log-federation-test-mosquitto-pub
         (format "canvasl/peers/%s/presence" old-id)
         (meta-log-federation-versions-test-presence old "oldtimer"))
        (meta-log-federation-test-mosquitto-pub
         "canvasl/sync" (meta-log-federation-versions-test-change old))
        (should (meta-log-federation-wait-until
                 (lambda () (>= (meta-log-federation-drop-count "protocol-version")
                                (+ before 2)))
                 10)))
      ;; Told once, naming the peer by its short id (its name was never accepted), with
      ;; both versions and what to do.
      (should (= 1 (length warnings)))
      (let ((w (car warnings)))
        (should (string-search (meta-log-federation--short-id old-id) w))
        (should (string-search "protocol version 1, this peer speaks 2" w))
        (should (string-search "update meta-log-federation on that peer" w))
        (should-not (string-search "oldtimer" w)))
      ;; Nothing else: not a peer, not pinned, no sync traffic counted.
      (should-not (member old-id (meta-log-federation-discover-peers)))
      (should-not (meta-log-federation-peer old-id))
      (meta-log-federation--save-trust)
      (should-not (and (file-exists-p meta-log-federation-trust-file)
                       (string-search old-id (meta-log-federation-test-file-string
                                              meta-log-federation-trust-file)))))))

(ert-deftest versions::throwaway-keys-cannot-make-warnings-without-bound ()
  "Old-version events from many fresh keys: a bounded number of warnings."
  (meta-log-federation-test-with-federation
    (let* ((n (+ meta-log-federation--version-warnings-max 3))
           (before (meta-log-federation-drop-count "protocol-version"))
           (meta-log-federation--version-warned nil)
           (warnings nil))
      (cl-letf (((symbol-function 'display-warning)
                 (lambda (_type message &rest _) (push message warnings))))
        (dotimes (_ n)
          (meta-log-federation-mqtt-publish
           "canvasl/sync"
           (meta-log-federation-versions-test-change (meta-log-federation-test-hostile-identity))
           1))
        (should (meta-log-federation-wait-until
                 (lambda () (>= (meta-log-federation-drop-count "protocol-version")
                                (+ before n)))
                 20)))
      ;; One per key up to the bound, then one saying the rest are only counted.
      (should (= (length warnings) (1+ meta-log-federation--version-warnings-max)))
      (should (string-search "only counted" (car warnings))))))

;; The documented examples were signed again for version 2: the independent
;; verifier (test/crosscheck, pure-JS BIP-340) must accept every one, and
;; each must carry this version.
(ert-deftest versions::documented-examples-carry-this-version-and-verify-independently ()
  "Every example event of docs/PROTOCOL.md: version tag current, signature valid."
  (let* ((doc (expand-file-name "../docs/PROTOCOL.md"
                                (file-name-directory
                                 (locate-library "meta-log-federation-test-helpers"))))
         (events (with-temp-buffer
                   (insert-file-contents doc)
                   (cl-remove-if-not (lambda (l) (and (string-prefix-p "{\"id\"" l)
                                                      (string-search "\"sig\"" l)))
                                     (split-string (buffer-string) "\n")))))
    (should (>= (length events) 5))
    (dolist (e events)
      (let* ((ev (json-parse-string e :object-type 'plist))
             (v (seq-find (lambda (tag) (equal (aref tag 0) "v")) (plist-get ev :tags))))
        (should (equal (aref v 1) (meta-log-federation--protocol-version)))))
    (should (equal (meta-log-federation-test-run-crosscheck events)
                   (make-list (length events) "ok")))))

(provide 'meta-log-federation-versions-test)
;;; meta-log-federation-versions-test.el ends here

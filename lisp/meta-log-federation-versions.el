;;; meta-log-federation-versions.el --- Tell the person about peers of another protocol version  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Every event carries the protocol version of its sender (the `v' tag,
;; and `protocol' in a presence).  The module refuses an event of another
;; version as `protocol-version', after its signature is verified, with a
;; sentence giving both versions and which side to update.  A refusal
;; that only bumped a counter would leave two people wondering why their
;; Emacsen ignore each other, so this file warns once per peer.
;;
;; The warning names the peer through `meta-log-federation--peer-label',
;; never its raw text.  Anyone can make keys, so the warnings are bounded:
;; after `meta-log-federation--version-warnings-max' peers, one last
;; warning says the rest are only counted (M-x meta-log-federation-counters).

;;; Code:

(require 'meta-log-federation-node)

(defconst meta-log-federation--version-warnings-max 16
  "How many peers of another protocol version are named in a warning.
Bounded because a throwaway key costs nothing: past this many, the rest
are only counted.")

(defvar meta-log-federation--version-warned nil
  "The peer ids already warned about as speaking another protocol version.
The symbol `full' at the head once the bound was reached and said so.")

(defun meta-log-federation--version-warned-count ()
  "Return how many peers were named in a protocol version warning."
  (length (remq 'full meta-log-federation--version-warned)))

(defun meta-log-federation--version-refused (reason text peer-id)
  "Warn once about PEER-ID when REASON is \"protocol-version\".
TEXT is the module's sentence: both versions and which side to update.
For `meta-log-federation-dropped-functions'."
  (when (and (equal reason "protocol-version")
             (stringp peer-id)
             (meta-log-federation--peer-id-p peer-id)
             (not (member peer-id meta-log-federation--version-warned)))
    (cond
     ((< (meta-log-federation--version-warned-count)
         meta-log-federation--version-warnings-max)
      (push peer-id meta-log-federation--version-warned)
      (display-warning
       'meta-log-federation
       (format "Peer %s uses another version of the federation protocol; nothing it sends is accepted, and it cannot read this Emacs either: %s (M-x meta-log-federation-counters counts these as protocol-version)"
               (meta-log-federation--peer-label peer-id) text)
       :warning))
     ((not (memq 'full meta-log-federation--version-warned))
      (push 'full meta-log-federation--version-warned)
      (display-warning
       'meta-log-federation
       (format "%d peers of another protocol version were named already; more are only counted (M-x meta-log-federation-counters, protocol-version)"
               meta-log-federation--version-warnings-max)
       :warning)))))

(add-hook 'meta-log-federation-dropped-functions #'meta-log-federation--version-refused)

(provide 'meta-log-federation-versions)
;;; meta-log-federation-versions.el ends here

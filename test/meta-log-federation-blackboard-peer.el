;;; meta-log-federation-blackboard-peer.el --- Blackboard commands for a test peer  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Loaded by a test peer (a batch Emacs) before
;; meta-log-federation-test-peer.el, by the blackboard tests.  Peer
;; messages steer it:
;;   "bb-edit:PEER-ID|OLD|NEW" replaces the line OLD by NEW in the
;;     blackboard of PEER-ID, through a buffer, as a person would, and
;;     saves it; reports BB-EDITED NEW.
;;   "bb-ask:PEER-ID" calls `meta-log-federation-sync-blackboard' with
;;     PEER-ID; reports BB-ASKED PEER-ID.
;; Every remote update of a blackboard is reported by the test peer
;; script as UPDATED URL CREATED FILE.

;;; Code:

(require 'meta-log-federation)

(defun test-bb-peer-edit (peer-id old new)
  "Replace the line OLD by NEW in PEER-ID's blackboard and save it."
  (let ((file (meta-log-federation-blackboard-file-of peer-id)))
    (with-current-buffer (find-file-noselect file)
      (goto-char (point-min))
      (re-search-forward (concat "^" (regexp-quote old) "$"))
      (replace-match new t t)
      (save-buffer))))

(add-hook 'meta-log-federation-peer-message-functions
          (lambda (_from text)
            (cond ((string-prefix-p "bb-edit:" text)
                   (pcase-let ((`(,peer ,old ,new) (split-string (substring text 8) "|")))
                     (test-bb-peer-edit peer old new)
                     (message "PEER: BB-EDITED %s" new)))
                  ((string-prefix-p "bb-ask:" text)
                   (meta-log-federation-sync-blackboard (substring text 7))
                   (message "PEER: BB-ASKED %s" (substring text 7))))))

(provide 'meta-log-federation-blackboard-peer)
;;; meta-log-federation-blackboard-peer.el ends here

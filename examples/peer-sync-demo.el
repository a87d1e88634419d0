;;; peer-sync-demo.el --- Load the peer sync demo commands  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The prototype's guide starts its demo by loading this file.  It puts
;; the package's lisp/ directory (beside this examples/ directory) on
;; `load-path' and loads `meta-log-peer-sync-demo', whose commands run on
;; the package's engine.  From the top of the source tree, start Emacs
;; with `emacs -l examples/peer-sync-demo.el', then:
;;
;;   M-x meta-log-peer-sync-demo-init            identity + federation + announce
;;                                               (embedded broker unless
;;                                               META_LOG_MQTT_BROKER or
;;                                               `meta-log-federation-mqtt-broker-url'
;;                                               names one)
;;   M-x meta-log-peer-sync-demo-sync-canvasl    share a CanvasL file
;;   M-x meta-log-peer-sync-demo-discover-peers  who is there
;;   M-x meta-log-peer-sync-demo-connect-peer    catch up with one peer
;;
;; The commands also take their arguments from Lisp, for example in
;; `emacs --batch':
;;
;;   (meta-log-peer-sync-demo-init "mqtt://127.0.0.1:1883")
;;   (meta-log-peer-sync-demo-sync-canvasl "~/board.canvasl")
;;
;; examples/PEER-SYNC-GUIDE.md walks through two sessions on one
;; machine, two machines with a broker, and Docker.

;;; Code:

(add-to-list 'load-path
             (expand-file-name "../lisp"
                               (file-name-directory
                                (or load-file-name buffer-file-name))))

(require 'meta-log-peer-sync-demo)

(provide 'peer-sync-demo)
;;; peer-sync-demo.el ends here
